"""What `docker build` would send and `COPY . .` would put in the image, computed without a
Docker engine: .dockerignore applied with Docker's own matching rules to the files of a
fresh checkout plus the secrets and local state a working copy holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)

# What a developer's or a build machine's working copy holds besides the tracked files.
PLANTED_SECRETS = [
    ".env",
    ".env.production",
    ".demo/admin_password",
    ".demo/device_key",
    "deploy/env/prod.env",
    "deploy/env/dev.env",
    "deploy/env/prod.rabbitmq.env",
    ".git/config",
    ".git/HEAD",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/django/__init__.py",
    "logs/iot_care.log",
    "reports/tests.html",
    "staticfiles/staticfiles.json",
    "config/.env",
    "ingest/settings.env",
    "dashboard/.demo/admin_password",
    "config/__pycache__/urls.cpython-311.pyc",
    "ingest/services/__pycache__/ingestion.cpython-311.pyc",
    "server.key",
    "config/tls/server.pem",
    "dump.sql",
    ".pytest_cache/v/cache/nodeids",
]
# The application and nothing else: its packages, templates, the customer's schema, the
# entry points, the production lock and the migration script the compose files run.
SHIPPED_FOLDERS = ("config/", "core/", "dashboard/", "db/", "ingest/", "scheduler/", "templates/")
SHIPPED_FILES = {
    "manage.py",
    "gunicorn.conf.py",
    "requirements/prod.lock",
    "deploy/docker-entrypoint-migrate.sh",
}


class DockerIgnore:
    """Docker's .dockerignore semantics (moby/patternmatcher), for paths with "/".

    Lines: ``#`` comments and blank lines skipped, whitespace trimmed, ``!`` re-includes,
    each pattern cleaned like Go's ``filepath.Clean`` with a leading "/" dropped. A
    pattern matches a path or any of its parent folders; ``*`` and ``?`` stop at "/",
    ``**`` spans folders; the last pattern that decides wins.
    """

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = _clean(line)
            if len(cleaned) > 1 and cleaned.startswith("/"):
                cleaned = cleaned[1:]
            self.patterns.append((exclusion, _compile(cleaned)))

    def excludes(self, path: str) -> bool:
        parents = path.split("/")[:-1]
        matched = False
        for exclusion, regex in self.patterns:
            # An inclusion cannot add to a match, an exclusion cannot undo a non-match.
            if exclusion != matched:
                continue
            match = bool(regex.match(path)) or any(
                regex.match("/".join(parents[: index + 1])) for index in range(len(parents))
            )
            if match:
                matched = not exclusion
        return matched


def _clean(pattern: str) -> str:
    """Go's filepath.Clean for "/"-separated paths."""
    rooted = pattern.startswith("/")
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        elif part == ".." and rooted:
            continue
        else:
            parts.append(part)
    cleaned = "/".join(parts)
    return ("/" + cleaned) if rooted else (cleaned or ".")


def _compile(pattern: str) -> re.Pattern:
    regex = "^"
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if pattern[index + 1 : index + 2] == "*":
                index += 1
                if pattern[index + 1 : index + 2] == "/":
                    index += 1
                regex += ".*" if index + 1 >= len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\":
            index += 1
            regex += re.escape(pattern[index]) if index < len(pattern) else "\\\\"
        elif char in ".$+(){}^|":
            regex += "\\" + char
        else:
            regex += char  # letters, "/", and [] classes as filepath.Match reads them
        index += 1
    return re.compile(regex + "$")


@pytest.mark.parametrize(
    ("lines", "path", "excluded"),
    [
        # Examples from Docker's documentation of .dockerignore.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "temp", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("**/*.go", "a/b/c.go", True),
        ("**/*.go", "c.go", True),
        ("*.md\n!README*.md", "README-secret.md", False),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
        # Anchored at the top, unlike .gitignore; a folder excludes what is in it.
        ("*.pyc", "pkg/x.pyc", False),
        ("/build/", "build/out/x", True),
        ("./secrets", "secrets/key", True),
        ("*\n!app", "app/deep/file.py", False),
        ("*\n!app\n**/.env", "app/deep/.env", True),
    ],
)
def test_the_matcher_follows_dockers_rules(lines, path, excluded):
    assert DockerIgnore(lines).excludes(path) is excluded


def fresh_checkout_files() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [path for path in tracked.split("\0") if path]


def build_context(files: list[str]) -> set[str]:
    dockerignore = ROOT / ".dockerignore"
    assert dockerignore.exists(), "no .dockerignore: the whole folder, secrets included, goes to the build"
    rules = DockerIgnore(dockerignore.read_text())
    return {path for path in files if not rules.excludes(path)}


def test_the_build_context_is_exactly_the_application():
    tracked = fresh_checkout_files()
    context = build_context(tracked + PLANTED_SECRETS)
    expected = {path for path in tracked if path.startswith(SHIPPED_FOLDERS) or path in SHIPPED_FILES}
    assert not context & set(PLANTED_SECRETS), (
        f"secrets in the image: {sorted(context & set(PLANTED_SECRETS))}"
    )
    assert context - expected == set(), f"shipped without being meant to: {sorted(context - expected)}"
    assert expected - context == set(), f"left out though the image needs it: {sorted(expected - context)}"


def test_everything_the_dockerfile_copies_is_in_the_context():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    context = build_context(fresh_checkout_files())
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", dockerfile, re.M):
        if source != ".":
            assert source in context, f"COPY {source}: not in the build context"
