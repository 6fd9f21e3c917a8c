"""Every process the deployment files describe starts, without a Docker engine or systemd.

For each service of each compose file and each systemd unit, its command runs on this
machine with the environment it would get there: the image's ``ENV`` (read from the
Dockerfile) or the unit's ``Environment=``, then its env file (the example one, since the
real one is never committed) and the compose ``environment:``. Addresses are mapped to
this machine's services, the database to the test database, the queue to this run's own,
ports to free ones, and absolute paths into a fresh folder, as empty as a new container's
file system. Each process must answer its readiness check (or print its first "started"
line), and then stop cleanly on SIGTERM.
"""

from __future__ import annotations

import configparser
import re
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.deploy.test_caddy import CADDY, free_port
from tests.workers import stop_worker_process, wait_until, worker_environment

ROOT = Path(settings.BASE_DIR)
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
INFRA_IMAGES = {
    "postgres": "this machine's PostgreSQL",
    "rabbitmq": "this machine's RabbitMQ",
    "redis": "this machine's Redis",
}
# What the official caddy image runs (its CMD), with the Caddyfile mounted at this path.
CADDY_IMAGE_CONFIG = "/etc/caddy/Caddyfile"


@dataclass
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    ready: str  # "http:<url>", "tcp:<port>", "log:<regex>", "exit"
    notify: bool = False
    config_files: dict[str, Path] = field(default_factory=dict)


def dockerfile_runtime() -> tuple[dict[str, str], list[str]]:
    """ENV and CMD of the Dockerfile's last stage."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = re.split(r"^FROM .*$", text, flags=re.M)[-1]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", runtime, re.M):
        for token in shlex.split(line):
            name, _, value = token.partition("=")
            env[name] = value
    command = yaml.safe_load(re.findall(r"^CMD (.+)$", runtime, re.M)[-1])
    return env, command


def env_file(path: Path) -> dict[str, str]:
    """A compose/systemd env file; the committed example when the real one is not there."""
    if not path.exists():
        path = path.with_name(path.name + ".example")
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


# One machine's env file maps its ports once: every unit reading /etc/iot_care/env sees
# the same WORKER_METRICS_PORT, as on a real machine.
_machine_ports: dict[str, str] = {}


def local_environment(declared: dict[str, str], topology, folder: Path) -> dict[str, str]:
    """The declared environment, pointed at this machine."""
    env = {}
    for name, value in declared.items():
        if value.startswith("/"):
            value = str(folder / value.lstrip("/"))  # as on a fresh container's disk
        env[name] = value
    test_database = worker_environment(topology)["DATABASE_URL"]
    env.update(
        DATABASE_URL=test_database,
        RABBITMQ_HOST="127.0.0.1",
        RABBITMQ_HOSTS="127.0.0.1:5672",
        RABBITMQ_PORT="5672",
        RABBITMQ_USER="guest",
        RABBITMQ_PASSWORD="guest",
        RABBITMQ_VHOST="/",
        RABBITMQ_MANAGEMENT_URL="http://127.0.0.1:15672",
        CACHE_URL="redis://127.0.0.1:6379/0",
        # This run's queues, declared as the test settings declare them.
        RABBITMQ_QUEUE_NAME=topology.queue,
        TEST_RABBITMQ_QUEUE_NAME=topology.queue,
        RABBITMQ_QUEUE_TYPE=topology.queue_type,
        RABBITMQ_QUEUE_MAX_LENGTH=str(topology.max_length),
        INGEST_RETRY_DELAYS_SECONDS=",".join(str(delay) for delay in topology.retry_delays),
    )
    # Values the operator fills in: what a filled-in file would hold.
    filled = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1"}
    for name, value in filled.items():
        if not env.get(name):
            env[name] = value
    if env.get("WORKER_METRICS_PORT"):
        env["WORKER_METRICS_PORT"] = _machine_ports.setdefault(env["WORKER_METRICS_PORT"], str(free_port()))
    return env


def process_environment(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Nothing inherited from the test run but a PATH whose python is the project's."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(folder / "home"),
        "LANG": "C.UTF-8",
        **env,
    }


def readiness_for(command: list[str], env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """How to tell that ``command`` started, and any environment it needs for that."""
    joined = " ".join(command)
    if "gunicorn" in joined:
        port = free_port()
        # Listening on every interface of a container; here on loopback only.
        bind = env.get("GUNICORN_BIND", "")
        assert bind == "" or bind.endswith(":8000"), bind
        return f"http:http://127.0.0.1:{port}/healthz", {"GUNICORN_BIND": f"127.0.0.1:{port}"}
    if "consume_queue" in joined:
        if "--metrics-port" in command:
            return f"http:http://127.0.0.1:{command[command.index('--metrics-port') + 1]}/metrics", {}
        if env.get("WORKER_METRICS_PORT"):
            return f"http:http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics", {}
        return r"log:consuming from \S+ \(batch \d+\)", {}
    if "run_scheduler" in joined:
        return "log:scheduler .* (became leader|on standby)", {}
    if "run_console_jobs" in joined:
        return "log:console job runner started", {}
    if "serve_grpc" in joined:
        # Every interface of a container; here a free port on loopback.
        return "log:serving gRPC ingest on", {"GRPC_BIND": "127.0.0.1", "GRPC_PORT": str(free_port())}
    if "docker-entrypoint-migrate.sh" in joined:
        return "exit", {}
    raise AssertionError(f"no readiness check known for {command}")


def compose_services(topology, folder: Path) -> list[tuple[str, Service | str]]:
    image_env, image_command = dockerfile_runtime()
    found: list[tuple[str, Service | str]] = []
    for compose_path in sorted((DEPLOY / "compose").glob("*.yml")):
        compose = yaml.safe_load(compose_path.read_text())
        for name, service in compose["services"].items():
            label = f"{compose_path.name}:{name}"
            own_folder = folder / label.replace(":", "-")  # every container has its own disk
            image = service.get("image", "")
            if image.split(":")[0] in INFRA_IMAGES:
                found.append((label, f"{image} is mapped to {INFRA_IMAGES[image.split(':')[0]]}"))
                continue
            declared: dict[str, str] = {}
            env_files = service.get("env_file", [])
            for path in [env_files] if isinstance(env_files, str) else env_files:
                declared |= env_file((compose_path.parent / path).resolve())
            environment = service.get("environment", {})
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment)
            declared |= {key: str(value) for key, value in environment.items()}
            if image.split(":")[0] == "caddy":
                found.append((label, caddy_service(label, service, declared, compose_path, own_folder)))
                continue
            env = local_environment({**image_env, **declared}, topology, own_folder)
            command = service.get("command", image_command)
            ready, extra = readiness_for(command, env)
            found.append((label, Service(label, command, {**env, **extra}, ready)))
    return found


def caddy_service(label: str, service: dict, declared: dict, compose_path: Path, folder: Path) -> Service:
    mounts = {}
    for volume in service.get("volumes", []):
        source, _, target = volume.partition(":")
        if source.startswith("."):
            mounts[target.split(":")[0]] = (compose_path.parent / source).resolve()
    https_port = free_port()
    env = {
        **{name: value for name, value in declared.items() if not value.startswith("${")},
        "DOMAIN": "localhost",  # ${DOMAIN} in production: the operator's name
        "UPSTREAM": f"127.0.0.1:{free_port()}",
        "HTTP_PORT": str(free_port()),
        "HTTPS_PORT": str(https_port),
        "GRPC_HTTPS_PORT": str(free_port()),
        "CADDY_ADMIN": "off",
        "XDG_DATA_HOME": str(folder / "caddy-data"),
        "XDG_CONFIG_HOME": str(folder / "caddy-config"),
    }
    command = [str(CADDY), "run", "--config", str(mounts[CADDY_IMAGE_CONFIG]), "--adapter", "caddyfile"]
    return Service(label, command, env, f"tls:{https_port}")


def systemd_services(topology, folder: Path) -> list[tuple[str, Service]]:
    found = []
    for unit_path in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read(unit_path)
        unit = parser["Service"]
        instance = str(free_port()) if unit_path.name.endswith("@.service") else ""
        declared: dict[str, str] = {}
        for line in unit.get("Environment", "").splitlines():
            for assignment in shlex.split(line.replace("%i", instance)):
                name, _, value = assignment.partition("=")
                declared[name] = value
        if "EnvironmentFile" in unit:
            # /etc/iot_care/env holds what deploy/env/prod.env.example lists.
            assert unit["EnvironmentFile"].strip("-") == "/etc/iot_care/env"
            declared |= env_file(DEPLOY / "env" / "prod.env")
        assert unit["WorkingDirectory"] == "/opt/iot_care"
        command = shlex.split(
            unit["ExecStart"].replace("%i", instance).replace("/opt/iot_care/.venv/bin/", f"{VENV_BIN}/")
        )
        env = local_environment(declared, topology, folder / unit_path.name)
        ready, extra = readiness_for(command, env)
        found.append(
            (
                unit_path.name,
                Service(unit_path.name, command, {**env, **extra}, ready, unit.get("Type") == "notify"),
            )
        )
    return found


class OutputReader:
    """Collects a process's output in the background, so that it never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def wait_for_end(self) -> None:
        """Every line, once the process has ended (the pipe is read to its end here, and only here)."""
        self._thread.join(timeout=10)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _answers(ready: str) -> bool:
    kind, _, target = ready.partition(":")
    try:
        if kind == "http":
            return urllib.request.urlopen(target, timeout=2).status == 200
        if kind == "tls":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", int(target)), timeout=2) as sock:
                with context.wrap_socket(sock, server_hostname="localhost"):
                    return True
    except OSError:
        return False
    raise AssertionError(ready)


def start_and_stop(service: Service, folder: Path) -> None:
    env = process_environment(service.env, folder)
    (folder / "home").mkdir(parents=True, exist_ok=True)
    notify_socket = None
    if service.notify:
        notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = folder / f"notify-{secrets.token_hex(4)}"
        notify_socket.bind(str(notify_path))
        notify_socket.settimeout(0.2)
        env["NOTIFY_SOCKET"] = str(notify_path)
    process = subprocess.Popen(
        service.command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = OutputReader(process)
    try:
        kind, _, target = service.ready.partition(":")
        if kind == "exit":
            process.wait(timeout=180)
            output.wait_for_end()
            assert process.returncode == 0, f"{service.name} failed:\n{output.text}"
            return

        def started() -> bool:
            if process.poll() is not None:
                return True  # checked below
            if kind == "log":
                return re.search(target, output.text) is not None
            return _answers(service.ready)

        wait_until(started, timeout=60, interval=0.25)
        assert process.poll() is None, f"{service.name} exited with {process.returncode}:\n{output.text}"
        assert started(), f"{service.name} did not become ready ({service.ready}):\n{output.text}"
        if notify_socket is not None:
            messages = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any("READY=1" in m for m in messages):
                try:
                    messages.append(notify_socket.recv(4096).decode())
                except TimeoutError:
                    pass
            assert any("READY=1" in m for m in messages), f"{service.name}: no READY=1 for systemd"
    finally:
        if notify_socket is not None:
            notify_socket.close()
        if process.poll() is None:
            # Not communicate(): the reader thread owns the pipe until it ends.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            output.wait_for_end()
            assert process.returncode == 0, (
                f"{service.name} did not stop cleanly ({process.returncode}):\n{output.text}"
            )


@pytest.fixture
def services_folder(tmp_path):
    return tmp_path


@pytest.mark.usefixtures("committed_db")
def test_every_compose_service_starts_with_the_images_environment(ingest_queue, services_folder):
    skipped, started = [], []
    for label, service in compose_services(ingest_queue, services_folder):
        if isinstance(service, str):
            skipped.append(f"{label}: {service}")
            continue
        start_and_stop(service, services_folder / label.replace(":", "-"))  # the folder its paths map to
        started.append(label)
    # The application's processes of every compose file really ran.
    for compose_path in (DEPLOY / "compose").glob("*.yml"):
        for name in ("web", "worker", "jobs", "scheduler", "caddy"):
            assert f"{compose_path.name}:{name}" in started, (compose_path.name, name)
    assert all(any(infra in line for infra in INFRA_IMAGES) for line in skipped), skipped


@pytest.mark.usefixtures("committed_db")
def test_every_systemd_unit_starts_with_its_environment(ingest_queue, services_folder):
    units = systemd_services(ingest_queue, services_folder)
    assert {name for name, _ in units} == {path.name for path in (DEPLOY / "systemd").glob("*.service")}
    for name, service in units:
        start_and_stop(service, services_folder / name)


@pytest.mark.usefixtures("committed_db")
def test_two_worker_instances_run_side_by_side(ingest_queue, services_folder):
    """systemd's worker@N instances on one machine share /etc/iot_care/env: each must still
    serve its metrics on a port of its own, or the second one cannot start."""
    first, second = (
        next(
            service
            for name, service in systemd_services(ingest_queue, services_folder / which)
            if "@" in name
        )
        for which in ("first", "second")
    )
    processes = []
    try:
        for index, service in enumerate((first, second)):
            folder = services_folder / f"worker-{index}"
            (folder / "home").mkdir(parents=True)
            process = subprocess.Popen(
                service.command,
                cwd=ROOT,
                env=process_environment(service.env, folder),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            processes.append((process, OutputReader(process)))
        wait_until(
            lambda: (
                any(process.poll() is not None for process, _ in processes)
                or (_answers(first.ready) and _answers(second.ready))
            ),
            timeout=60,
        )
        for process, output in processes:
            assert process.poll() is None, f"a worker instance exited:\n{output.text}"
        assert first.ready != second.ready, "both instances answer on one port"
    finally:
        for process, _ in processes:
            if process.poll() is None:
                stop_worker_process(process, timeout=30)


def test_the_image_sets_no_folder_only_one_process_creates():
    """The class of bug this file guards against, named: an image-wide path variable."""
    image_env, _ = dockerfile_runtime()
    assert "PROMETHEUS_MULTIPROC_DIR" not in image_env
    assert "LOG_DIR" not in image_env  # logs go to stdout in a container
    # gunicorn binds loopback by default; in a container it must be reachable by the proxy.
    assert image_env["GUNICORN_BIND"] == "0.0.0.0:8000"
