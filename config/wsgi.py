"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.prod")

_site = get_wsgi_application()

from config.handlers import PathRoutedApplication  # noqa: E402 - needs the settings loaded

application = PathRoutedApplication(_site)
