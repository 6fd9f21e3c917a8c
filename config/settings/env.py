"""The one place that reads the environment (and ``.env`` when present)."""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# A developer's .env is read if it exists (DJANGO_ENV_FILE names another file); real
# environment variables win over it.
_env_file = Path(os.environ.get("DJANGO_ENV_FILE", BASE_DIR / ".env"))
if _env_file.exists():
    environ.Env.read_env(str(_env_file), overwrite=False)
