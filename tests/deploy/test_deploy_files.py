"""Deployment files, checked without a Docker engine: compose files parsed, env names known,
systemd units complete, production settings clean under ``check --deploy``."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
COMPOSE = ROOT / "deploy" / "compose"
APP_SERVICES = {"web", "worker", "jobs", "scheduler"}


def _compose(name: str) -> dict:
    return yaml.safe_load((COMPOSE / f"compose.{name}.yml").read_text())


def _settings_env_names() -> set[str]:
    names = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        names |= set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', path.read_text()))
    return names | {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR"}


@pytest.mark.parametrize("name", ["local", "dev", "prod"])
def test_compose_files_have_the_services_and_named_volumes(name):
    compose = _compose(name)
    services = compose["services"]
    assert APP_SERVICES | {"caddy"} <= set(services)
    for service in APP_SERVICES:
        assert services[service].get("image") or services[service].get("build")
    assert "caddy_data" in compose["volumes"]
    assert "logs" not in compose["volumes"]  # logs go to stdout, collected by the runtime
    assert "caddy_data:/data" in services["caddy"]["volumes"]
    assert services["worker"]["command"] == ["python", "manage.py", "consume_queue"]
    assert services["scheduler"]["command"] == ["python", "manage.py", "run_scheduler"]
    assert services["worker"].get("deploy", {}).get("replicas", 1) >= 1
    assert services["scheduler"].get("deploy", {}).get("replicas", 1) == 1 or name == "local"


def test_only_local_runs_databases_in_containers_and_prod_uses_an_external_one():
    assert {"postgres", "rabbitmq", "migrate"} <= set(_compose("local")["services"])
    prod = _compose("prod")
    assert "postgres" not in prod["services"]
    # Each broker node's messages survive its restart.
    assert {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"} <= set(prod["volumes"])
    assert "DATABASE_URL=" in (ROOT / "deploy" / "env" / "prod.env.example").read_text()


RABBITMQ_NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


def _app_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {name: str(value) for name, value in environment.items()}


def test_production_runs_a_three_node_rabbitmq_cluster_with_one_cookie():
    services = _compose("prod")["services"]
    nodes = [services[name] for name in RABBITMQ_NODES]
    # One cookie source for all three (nodes with different cookies cannot cluster), kept
    # out of the repository: an env file the operator makes from its .example.
    assert {str(node["env_file"]) for node in nodes} == {"../env/prod.rabbitmq.env"}
    assert "RABBITMQ_ERLANG_COOKIE=\n" in (ROOT / "deploy" / "env" / "prod.rabbitmq.env.example").read_text()
    for name, node in zip(RABBITMQ_NODES, nodes, strict=True):
        assert node["image"].startswith("rabbitmq:") and node["image"].endswith("-management")
        assert node["hostname"] == name  # its node name: rabbit@<hostname>
        assert "environment" not in node or "RABBITMQ_ERLANG_COOKIE" not in _app_environment(node)
        assert f"{name}:/var/lib/rabbitmq" in node["volumes"]
        [config] = [
            volume for volume in node["volumes"] if volume.endswith("/etc/rabbitmq/conf.d/20-cluster.conf:ro")
        ]
        assert config.split(":")[0] == "./rabbitmq-cluster.conf"
    cluster = {
        key.strip(): value.strip()
        for key, _, value in (
            line.partition("=")
            for line in (COMPOSE / "rabbitmq-cluster.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
    }
    assert cluster["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {
        value for key, value in cluster.items() if key.startswith("cluster_formation.classic_config.nodes.")
    }
    assert listed == {f"rabbit@{name}" for name in RABBITMQ_NODES}


def test_production_app_services_know_every_broker_node_and_use_quorum_queues():
    services = _compose("prod")["services"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["web"]["deploy"]["replicas"] >= 2
    for name in APP_SERVICES | {"migrate"}:
        environment = _app_environment(services[name])
        assert environment["RABBITMQ_HOSTS"].split(",") == [f"{node}:5672" for node in RABBITMQ_NODES], name
        assert environment["RABBITMQ_MANAGEMENT_URL"].split(",") == [
            f"http://{node}:15672" for node in RABBITMQ_NODES
        ], name
        assert environment["RABBITMQ_QUEUE_TYPE"] == "quorum", name
        assert set(RABBITMQ_NODES) <= set(services[name]["depends_on"]), name


def test_a_production_app_service_without_the_broker_nodes_is_caught(monkeypatch):
    """The check above reads what compose would give the container: an app service that
    overrides the shared environment with one node fails it."""
    prod = _compose("prod")
    prod["services"]["worker"]["environment"] = {"RABBITMQ_HOSTS": "rabbitmq-1:5672"}
    monkeypatch.setattr(sys.modules[__name__], "_compose", lambda name: prod)
    with pytest.raises(AssertionError, match="worker"):
        test_production_app_services_know_every_broker_node_and_use_quorum_queues()


@pytest.mark.parametrize("env_file", ["local.env", "dev.env.example", "prod.env.example"])
def test_example_env_files_name_only_known_settings_and_hold_no_real_secret(env_file):
    known = _settings_env_names()
    lines = [
        line
        for line in (ROOT / "deploy" / "env" / env_file).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for line in lines:
        name, _, value = line.partition("=")
        assert name in known, f"{env_file}: {name} is not read by the settings"
        if name in ("DJANGO_SECRET_KEY", "RABBITMQ_PASSWORD", "METRICS_TOKEN") and env_file != "local.env":
            assert value == "", f"{env_file}: {name} must be left for the operator to fill"


def test_the_dockerfile_is_multi_stage_and_runs_as_a_non_root_user():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .+ AS (\w+)", dockerfile, re.M)
    assert stages == ["build", "runtime"]
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "build-essential" not in runtime
    assert re.search(r"^USER app$", runtime, re.M)
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py"' in runtime


@pytest.mark.parametrize(
    "unit",
    [
        "iot-care-web.service",
        "iot-care-worker@.service",
        "iot-care-scheduler.service",
        "iot-care-jobs.service",
        "iot-care-grpc.service",
    ],
)
def test_systemd_units_are_complete(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(ROOT / "deploy" / "systemd" / unit)
    assert parser["Service"]["ExecStart"].startswith("/opt/iot_care/.venv/bin/")
    assert parser["Service"]["KillSignal"] == "SIGTERM"
    assert parser["Service"]["User"] == "iot_care"
    # Workers start with their target (iot-care-workers.target), which starts at boot.
    assert parser["Install"]["WantedBy"] == (
        "iot-care-workers.target" if "@" in unit else "multi-user.target"
    )
    # manage.py defaults to the development settings: each unit names production itself,
    # so an env file that leaves DJANGO_SETTINGS_MODULE out cannot start a unit on them.
    assert "DJANGO_SETTINGS_MODULE=config.settings.prod" in parser["Service"]["Environment"].split()


SYSTEMD = ROOT / "deploy" / "systemd"


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(text)
    return parser


def _worker_instance_problems(worker_unit: str, target: str) -> list[str]:
    """What would keep N worker instances of one machine from running side by side, or from
    being told apart; empty when there is nothing."""
    unit, workers = _unit(worker_unit), _unit(target)
    problems = []
    if not re.search(r"--metrics-port %i(\s|$)", unit["Service"]["ExecStart"]):
        problems.append("ExecStart: each instance must serve its metrics on its own port (%i)")
    if "%i" not in unit["Service"].get("SyslogIdentifier", ""):
        problems.append("SyslogIdentifier: each instance needs its own name in the journal (%i)")
    if "%i" not in unit["Unit"].get("Description", ""):
        problems.append("Description: systemctl status must tell the instances apart (%i)")
    if unit["Unit"].get("PartOf") != "iot-care-workers.target":
        problems.append("PartOf: restarting iot-care-workers.target must restart every instance")
    if unit["Install"].get("WantedBy") != "iot-care-workers.target":
        problems.append("WantedBy: an enabled instance must start with iot-care-workers.target")
    if workers["Install"].get("WantedBy") != "multi-user.target":
        problems.append("iot-care-workers.target must start at boot")
    return problems


def test_worker_instances_have_their_own_port_and_name_and_start_with_their_target():
    assert (
        _worker_instance_problems(
            (SYSTEMD / "iot-care-worker@.service").read_text(),
            (SYSTEMD / "iot-care-workers.target").read_text(),
        )
        == []
    )


def test_a_worker_unit_that_names_no_instance_is_caught():
    unit = (SYSTEMD / "iot-care-worker@.service").read_text()
    shared_port = unit.replace("--metrics-port %i", "--metrics-port 9101").replace(
        "SyslogIdentifier=iot-care-worker@%i", "SyslogIdentifier=iot-care-worker"
    )
    problems = _worker_instance_problems(shared_port, (SYSTEMD / "iot-care-workers.target").read_text())
    assert [problem.split(":")[0] for problem in problems] == ["ExecStart", "SyslogIdentifier"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_every_unit_and_worker_instances(tmp_path):
    """``systemd-analyze verify`` on copies whose commands point at this checkout's venv
    (it refuses a command that does not exist); three worker instances of the template."""
    for unit in SYSTEMD.iterdir():
        (tmp_path / unit.name).write_text(
            unit.read_text().replace("/opt/iot_care/.venv/bin/", f"{Path(sys.executable).parent}/")
        )
    names = [
        *(unit.name for unit in SYSTEMD.iterdir() if "@" not in unit.name),
        *(f"iot-care-worker@{port}.service" for port in (9101, 9102, 9103)),
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_production_settings_pass_check_deploy_without_warnings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.prod",
        "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
        "DATABASE_URL": "postgres://iot_care:pw@db.internal:5432/iot_care",
        "RABBITMQ_PASSWORD": "pw",
        "DJANGO_ALLOWED_HOSTS": "care.example.org",
        "CACHE_URL": "redis://cache.internal:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


REQUIRED_IN_PRODUCTION = [
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "RABBITMQ_PASSWORD",
    "DJANGO_ALLOWED_HOSTS",
    "CACHE_URL",
]


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_settings_have_no_default_for_secrets(missing):
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED_IN_PRODUCTION}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.prod"
    env.pop("DJANGO_ENV_FILE", None)
    for name, value in {
        "DJANGO_SECRET_KEY": "k" * 50,
        "DATABASE_URL": "postgres://x@db/x",
        "RABBITMQ_PASSWORD": "pw",
        "DJANGO_ALLOWED_HOSTS": "care.example.org",
        "CACHE_URL": "redis://cache.internal:6379/0",
    }.items():
        env[name] = "" if name == missing else value  # empty counts as missing
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"Set {missing} in the environment" in result.stderr


@pytest.mark.parametrize(
    ("hook", "refusal"),
    [
        (
            {"ALERT_ESCALATION_WEBHOOK_URL": "https://oncall.example.org/hook"},
            "Set ALERT_ESCALATION_WEBHOOK_SECRET",
        ),
        (
            {
                "ALERT_ESCALATION_WEBHOOK_URL": "http://oncall.example.org/hook",
                "ALERT_ESCALATION_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8rX7ghW5p0E=",
            },
            "must be an https:// URL",
        ),
    ],
)
def test_production_refuses_an_escalation_hook_without_a_secret_or_over_plain_http(hook, refusal):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALERT_ESCALATION")}
    env.pop("DJANGO_ENV_FILE", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.prod",
            "DJANGO_SECRET_KEY": "k" * 50,
            "DATABASE_URL": "postgres://x@db/x",
            "RABBITMQ_PASSWORD": "pw",
            "DJANGO_ALLOWED_HOSTS": "care.example.org",
            "CACHE_URL": "redis://cache.internal:6379/0",
            **hook,
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert refusal in result.stderr


def _checkout_with_env_file(tmp_path: Path, env_file_text: str) -> Path:
    """A copy of the tracked files with a developer's .env beside them, as deploy/setup.sh
    leaves it (the project folder's own .env, if any, is never touched)."""
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for name in filter(None, tracked.split("\0")):
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    (checkout / ".env").write_text(env_file_text)
    return checkout


DEVELOPMENT_ENV_FILE = """DJANGO_SECRET_KEY=development-key-from-the-env-file-0123456789-abcdefghijklmnop
DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1
DATABASE_URL=postgres://iot_care:iot_care@127.0.0.1:5432/iot_care
RABBITMQ_USER=guest
RABBITMQ_PASSWORD=guest
CACHE_URL=redis://127.0.0.1:6379/0
"""


def _run_in_empty_environment(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``env -i NAME=value… python …``: nothing inherited from this test's environment."""
    return subprocess.run(
        ["env", "-i", *(f"{name}={value}" for name, value in env.items()), sys.executable, *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_never_reads_the_developers_env_file(tmp_path):
    checkout = _checkout_with_env_file(tmp_path, DEVELOPMENT_ENV_FILE)
    result = _run_in_empty_environment(
        checkout, "manage.py", "check", "--deploy", DJANGO_SETTINGS_MODULE="config.settings.prod"
    )
    assert result.returncode != 0, result.stdout
    assert (
        "Set DJANGO_SECRET_KEY, DATABASE_URL, RABBITMQ_PASSWORD, DJANGO_ALLOWED_HOSTS, CACHE_URL in the environment"
        in result.stderr
    ), result.stderr


def test_development_reads_the_env_file_and_production_only_one_named_explicitly(tmp_path):
    checkout = _checkout_with_env_file(tmp_path, DEVELOPMENT_ENV_FILE)
    show_key = [
        "-c",
        "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
    ]
    development = _run_in_empty_environment(checkout, *show_key, DJANGO_SETTINGS_MODULE="config.settings.dev")
    assert development.stdout.strip() == "development-key-from-the-env-file-0123456789-abcdefghijklmnop"

    named = tmp_path / "production.env"
    named.write_text(DEVELOPMENT_ENV_FILE.replace("development-key", "named-file-key"))
    production = _run_in_empty_environment(
        checkout, *show_key, DJANGO_SETTINGS_MODULE="config.settings.prod", DJANGO_ENV_FILE=str(named)
    )
    assert production.stdout.strip() == "named-file-key-from-the-env-file-0123456789-abcdefghijklmnop"

    missing = _run_in_empty_environment(
        checkout, *show_key, DJANGO_SETTINGS_MODULE="config.settings.prod", DJANGO_ENV_FILE="/nonexistent.env"
    )
    assert missing.returncode != 0 and "DJANGO_ENV_FILE names /nonexistent.env" in missing.stderr


def test_a_metrics_folder_that_does_not_exist_yet_is_created(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR inherited by a manage.py command (only gunicorn makes it)."""
    folder = tmp_path / "metrics" / "not-yet"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert folder.is_dir()


def test_gunicorn_keeps_the_metrics_files_of_running_processes_in_a_shared_folder(tmp_path, monkeypatch):
    """The folder is shared with the host's other servers and consumers: a server that starts
    removes only what processes that have ended left behind."""
    import runpy

    ended = subprocess.Popen(["true"])
    ended.wait()
    running = os.getpid()
    for name in (f"counter_{running}.db", f"histogram_{running}.db", f"counter_{ended.pid}.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    runpy.run_path(str(ROOT / "gunicorn.conf.py"))["on_starting"](server=None)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"counter_{running}.db",
        f"histogram_{running}.db",
        "notes.txt",
    ]


def test_gunicorn_reopens_the_broker_connection_in_each_worker():
    import runpy

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert config["workers"] >= 1 and config["timeout"] > 0 and config["accesslog"] == "-"
    from ingest.broker import publisher

    publisher.get_publisher()
    config["post_fork"](server=None, worker=None)
    assert publisher._publisher is None


def test_gunicorn_listens_on_loopback_unless_told_otherwise(monkeypatch):
    import runpy

    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    monkeypatch.delenv("WEB_PORT", raising=False)
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:8000"
    monkeypatch.setenv("GUNICORN_BIND", "0.0.0.0:8000")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "0.0.0.0:8000"
    # Nothing a machine without containers reads asks for every interface.
    for path in [
        *(ROOT / "deploy" / "systemd").glob("*.service"),
        ROOT / "deploy" / "env" / "prod.env.example",
    ]:
        assert "0.0.0.0" not in path.read_text(), path.name
