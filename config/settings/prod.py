"""Production: every secret must come from the environment; HTTPS behind Caddy."""

from django.core.exceptions import ImproperlyConfigured

from .env import env, require

# Checked before anything else reads them: a missing secret stops the start with one
# message naming every missing variable, and an empty one counts as missing.
require("DJANGO_SECRET_KEY", "DATABASE_URL", "RABBITMQ_PASSWORD", "DJANGO_ALLOWED_HOSTS", "CACHE_URL")

from .base import *  # noqa: E402, F403

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
DATABASES["default"] = env.db("DATABASE_URL")  # noqa: F405 - required, no default in production
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
RABBITMQ_PASSWORD = env.str("RABBITMQ_PASSWORD")
if ALERT_ESCALATION_WEBHOOK_URL:  # noqa: F405
    # An escalation hook with no secret would send unsigned calls: no default, no dev value.
    require("ALERT_ESCALATION_WEBHOOK_SECRET")
    if not ALERT_ESCALATION_WEBHOOK_URL.startswith("https://"):  # noqa: F405
        raise ImproperlyConfigured("ALERT_ESCALATION_WEBHOOK_URL must be an https:// URL in production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes call the app directly over plain HTTP, not through the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The device rate limit counts in the cache: one Redis shared by every worker and host,
# where one atomic script per request keeps the count exact. A per-process cache (locmem,
# dummy) would allow the rate once per gunicorn worker; other backends count neither
# atomically nor, for files, across hosts.
if CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":  # noqa: F405
    raise ImproperlyConfigured(
        "CACHE_URL must be a Redis URL (redis://[:password@]host:6379/0 or rediss://...) shared by "
        f"every web process; {CACHES['default']['BACKEND']} cannot hold the device rate limit."  # noqa: F405
    )

if MQTT_ENABLED:  # noqa: F405
    # Without it the broker's auth endpoints refuse everything, and every device login fails.
    require("BROKER_AUTH_SECRET")
# The broker calls its auth endpoints over plain HTTP on the internal network, never via Caddy.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^internal/broker-auth/"]
