#!/usr/bin/env python
"""How much a flood of wrong console logins slows /healthz, against real gunicorn.

Password hashing is deliberately slow (PBKDF2, Django's default hasher; the production
settings use it too) and holds a CPU: a flood of logins leaves the web workers little
time for anything else. The login lockout (django-axes) refuses a
locked user name or address before any hashing. Three rounds, numbers printed, nothing
asserted:

  idle         /healthz alone;
  one source   the flood comes from one address, guessing one user's password (the
               lockout stops it after LOGIN_FAILURE_LIMIT attempts);
  spread       every attempt from a new address for a new user name, so that no counter
               reaches the limit: what a flood costs when the lockout cannot help (and
               what every flood cost before there was one).

The bench connects from loopback, a trusted proxy, so it chooses each attempt's address
with X-Forwarded-For as Caddy would. It uses a database of its own
(``iot_care_loginbench``); the dev database is never touched.

    .venv/bin/python bench/login_flood_bench.py --seconds 10 --flooders 8 --web-workers 4
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_DB = "iot_care_loginbench"
PORT = 8766
PASSWORD = "a-long-bench-password-1"


def environment() -> dict[str, str]:
    values = dict(os.environ)
    env_file = ROOT / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and not key.startswith("#"):
                values.setdefault(key, value)
    base_url = values.get("DATABASE_URL", "postgres://iot_care:iot_care@127.0.0.1:5432/iot_care")
    return {
        **values,
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": urlsplit(base_url)._replace(path=f"/{BENCH_DB}").geturl(),
        "ADMIN_DATABASE_URL": urlsplit(base_url)._replace(path="/postgres").geturl(),
        "RABBITMQ_QUEUE_NAME": "bench-login",
        "LOG_LEVEL": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def prepare(env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(env["ADMIN_DATABASE_URL"], autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    manage(env, "bootstrap_db")
    manage(env, "migrate", "-v", "0")
    manage(env, "collectstatic", "--no-input", "-v", "0")
    script = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        "u, _ = U.objects.get_or_create(username='benchuser', defaults={'is_staff': True}); "
        f"u.set_password({PASSWORD!r}); u.save()"
    )
    manage(env, "shell", "-c", script)


def request(method: str, path: str, body: str | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Set-Cookie") or "", response.read()
    finally:
        connection.close()


def csrf_pair() -> tuple[str, str]:
    _, cookie, body = request("GET", "/console/login/")
    cookie_token = re.search(r"csrftoken=([^;]+)", cookie).group(1)
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    return cookie_token, form_token


def flood(stop: threading.Event, spread: bool, worker: int, statuses: list[int]) -> None:
    cookie_token, form_token = csrf_pair()
    attempt = 0
    while not stop.is_set():
        attempt += 1
        if spread:
            username, address = (
                f"nobody-{worker}-{attempt}",
                f"10.{worker}.{attempt // 250 % 250}.{attempt % 250}",
            )
        else:
            username, address = "benchuser", "192.0.2.1"
        status, _, _ = request(
            "POST",
            "/console/login/",
            urlencode({"username": username, "password": "wrong", "csrfmiddlewaretoken": form_token}),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookie_token}",
                "X-Forwarded-For": address,
            },
        )
        statuses.append(status)


def healthz_latencies(seconds: float) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, _, _ = request("GET", "/healthz")
        latencies.append(time.monotonic() - started)
        assert status == 200, status
        time.sleep(0.05)
    return latencies


def report(name: str, latencies: list[float], statuses: list[int]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    logins = {status: statuses.count(status) for status in sorted(set(statuses))}
    print(
        f"{name:<11} /healthz n={len(ordered):>4} p50={statistics.median(ordered) * 1000:8.1f} ms "
        f"p95={p95 * 1000:8.1f} ms max={ordered[-1] * 1000:8.1f} ms   login answers {logins}"
    )


def round_(name: str, seconds: float, flooders: int, spread: bool | None) -> None:
    stop = threading.Event()
    statuses: list[int] = []
    threads = []
    if spread is not None:
        threads = [
            threading.Thread(target=flood, args=(stop, spread, number, statuses), daemon=True)
            for number in range(flooders)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)  # let the flood fill the workers
    latencies = healthz_latencies(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    report(name, latencies, statuses)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=4)
    options = parser.parse_args()

    env = environment()
    prepare(env)
    manage(env, "axes_reset")
    gunicorn = subprocess.Popen(
        [str(Path(PYTHON).parent / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        cwd=ROOT,
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{PORT}", "GUNICORN_WORKERS": str(options.web_workers)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                if request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        round_("idle", options.seconds, options.flooders, None)
        round_("one source", options.seconds, options.flooders, False)
        round_("spread", options.seconds, options.flooders, True)
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=30)
        manage(env, "axes_reset")


if __name__ == "__main__":
    main()
