"""The hash-checked locks match requirements/*.txt (deploy/lock.sh regenerates them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

REQUIREMENTS = Path(settings.BASE_DIR) / "requirements"
DEV_ONLY = {"honcho", "pytest", "pytest-django", "ruff", "playwright", "caddyserver", "uv", "schemathesis"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a requirements file and the files it includes with ``-r``."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins |= requirement_pins(path.parent / line[3:].strip())
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"{path.name}: {line!r} is not pinned with =="
        pins[canonical(match[1])] = match[3]
    return pins


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` of a lock written by ``uv pip compile --generate-hashes``."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # continuation lines joined
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)(\s*;[^-]*)?((?:\s+--hash=\S+)*)", line)
        assert match, f"{path.name}: {line!r} is not a pinned entry"
        hashes = re.findall(r"--hash=(\S+)", match[5])
        entries[canonical(match[1])] = (match[3], hashes)
    return entries


@pytest.mark.parametrize("name", ["prod", "dev"])
def test_the_lock_pins_every_requirement_at_its_version_with_hashes(name):
    pins = requirement_pins(REQUIREMENTS / f"{name}.txt")
    entries = lock_entries(REQUIREMENTS / f"{name}.lock")
    for package, version in pins.items():
        assert package in entries, (
            f"{package} is in requirements/{name}.txt but not in {name}.lock: run deploy/lock.sh"
        )
        assert entries[package][0] == version, (
            f"{package}=={version} in requirements, {entries[package][0]} in {name}.lock: run deploy/lock.sh"
        )
    for package, (version, hashes) in entries.items():
        assert hashes, f"{package}=={version} in {name}.lock has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", value) for value in hashes), package


def test_the_production_lock_holds_no_dev_tools():
    production = lock_entries(REQUIREMENTS / "prod.lock")
    assert not DEV_ONLY & set(production), DEV_ONLY & set(production)
    assert DEV_ONLY <= set(lock_entries(REQUIREMENTS / "dev.lock"))


def test_both_locks_agree_on_every_shared_package():
    """The image and the test runs use the same versions of what they share."""
    production = lock_entries(REQUIREMENTS / "prod.lock")
    development = lock_entries(REQUIREMENTS / "dev.lock")
    for package, (version, _) in production.items():
        assert package in development, package
        assert development[package][0] == version, (package, version, development[package][0])


def test_installs_go_through_the_locks_with_hashes():
    root = Path(settings.BASE_DIR)
    setup = (root / "deploy" / "setup.sh").read_text()
    assert "REQUIREMENTS=${REQUIREMENTS:-requirements/dev.lock}" in setup
    assert 'pip install -q --require-hashes -r "$REQUIREMENTS"' in setup
    dockerfile = (root / "deploy" / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert installs == [
        "pip install --no-cache-dir --require-hashes --prefix=/install -r requirements/prod.lock"
    ]
