"""Local development: the defaults of ``base`` plus a console-friendly DEBUG default."""

from .base import *  # noqa: F403
from .env import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

SECRET_KEY = SECRET_KEY or "insecure-dev-only-key-never-used-in-production"  # noqa: F405
