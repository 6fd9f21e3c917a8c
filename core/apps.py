from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: the one application error and how HTTP shows it."""

    name = "core"
    label = "core"
