"""The one place that reads the environment, and the only one that may read an env file.

Development and test settings read the project's ``.env`` when it exists (``deploy/setup.sh``
writes one with local values). Production never does: its variables come from the process
environment (systemd ``EnvironmentFile=``, compose ``env_file:``), so a developer's file
left in the folder can never lend it a development secret. Any settings module reads the
file named by ``DJANGO_ENV_FILE`` when that is given. Real environment variables always
win over a file.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Settings modules allowed to pick up the project's .env without being told to.
IMPLICIT_ENV_FILE_SETTINGS = {"config.settings.dev", "config.settings.test"}

env = environ.Env()


def env_file_to_read() -> Path | None:
    """The env file this process reads: one named explicitly, or ``.env`` for dev and test."""
    named = os.environ.get("DJANGO_ENV_FILE")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ImproperlyConfigured(f"DJANGO_ENV_FILE names {named}, which is not a file")
        return path
    if os.environ.get("DJANGO_SETTINGS_MODULE") in IMPLICIT_ENV_FILE_SETTINGS:
        path = BASE_DIR / ".env"
        return path if path.is_file() else None
    return None


def require(*names: str) -> None:
    """Refuse to start unless every one of ``names`` is set to a non-empty value."""
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise ImproperlyConfigured(
            f"Set {', '.join(missing)} in the environment: these settings have no default "
            f"in {os.environ.get('DJANGO_SETTINGS_MODULE')}, and no .env file is read there."
        )


_env_file = env_file_to_read()
if _env_file is not None:
    environ.Env.read_env(str(_env_file), overwrite=False)
